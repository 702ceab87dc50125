"""pynet.proxy"""
