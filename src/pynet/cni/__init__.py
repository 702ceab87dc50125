"""pynet.cni"""
