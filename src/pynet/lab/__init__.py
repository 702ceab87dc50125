"""pynet.lab"""
