"""Entry point the Pulumi CLI runs for every rtcfleet stack (see ``Pulumi.yaml``)."""

from infra.program import main

main()
