"""mmrec.teacher"""
