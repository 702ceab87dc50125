"""pynet.nft"""
