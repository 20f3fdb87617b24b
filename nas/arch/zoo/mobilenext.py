"""(family not yet added)"""
