"""Baking the node bundle into machine images (AWS with boto3; Image Builder lives in infra)."""
