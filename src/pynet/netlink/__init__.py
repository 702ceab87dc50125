"""pynet.netlink"""
