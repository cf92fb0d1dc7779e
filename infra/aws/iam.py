"""IAM documents the AWS blocks share."""

from __future__ import annotations

import json

# Lets EC2 instances (nodes, and the image builder's build instances) assume a role.
EC2_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
