"""pynet.k8s"""
