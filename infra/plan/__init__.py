"""The offline plan: run a stack program under Pulumi's mocks and check it with the policy pack.

``rtcfleet plan``, the infra tests and the benchmark share these helpers.
"""
