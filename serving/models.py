# Deployments are declared in a file (serving/deployments.py reads it); serving keeps no tables.
