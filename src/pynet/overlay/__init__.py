"""pynet.overlay"""
