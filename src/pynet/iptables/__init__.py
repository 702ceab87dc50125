"""pynet.iptables"""
