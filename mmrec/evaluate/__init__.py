"""mmrec.evaluate"""
