"""pynet.daemon"""
