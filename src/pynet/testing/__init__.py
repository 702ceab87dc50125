"""pynet.testing"""
