"""pynet.deploy"""
