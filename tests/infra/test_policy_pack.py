"""The CrossGuard pack as the Pulumi engine runs it: a gRPC analyzer serving infra.policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from infra.policy import POLICIES

PACK = Path(__file__).resolve().parents[2] / "policy" / "__main__.py"


@pytest.fixture(scope="module")
def analyzer():
    process = subprocess.Popen(
        [sys.executable, str(PACK)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def _analyze(stub, type_token: str, props: dict, name: str = "r") -> list[str]:
    request = analyzer_pb2.AnalyzeRequest(
        type=type_token,
        properties=json_format.ParseDict(props, struct_pb2.Struct()),
        urn=f"urn:pulumi:s::rtcfleet::{type_token}::{name}",
        name=name,
    )
    return [d.policyName for d in stub.Analyze(request, timeout=10).diagnostics]


def test_pack_serves_every_policy(analyzer) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
    assert info.name == "rtcfleet"
    assert {p.name for p in info.policies} == {p.name for p in POLICIES}


def test_pack_flags_an_open_admin_group(analyzer) -> None:
    group: dict[str, Any] = {
        "tags": {"rtcfleet:role": "admin-lb"},
        "ingress": [
            {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}
        ],
    }
    assert _analyze(analyzer, "aws:ec2/securityGroup:SecurityGroup", group) == [
        "rtcfleet-firewall-matches-spec"
    ]
    group["ingress"][0]["cidrBlocks"] = ["203.0.113.0/24"]
    assert _analyze(analyzer, "aws:ec2/securityGroup:SecurityGroup", group) == []


def test_pack_reads_list_tags_through_the_engine_proxies(analyzer) -> None:
    gateways = {
        "minSize": 2,
        "vpcZoneIdentifiers": ["subnet-a"],
        "tags": [{"key": "rtcfleet:role", "value": "gateway", "propagateAtLaunch": True}],
    }
    assert _analyze(analyzer, "aws:autoscaling/group:Group", gateways) == [
        "rtcfleet-gateways-span-zones"
    ]
