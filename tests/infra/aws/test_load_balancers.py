"""Listeners, their ports and targets, health checks, stickiness, schemes."""

from __future__ import annotations

from tests.infra.aws.helpers import of_type, one

LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
TG = "aws:lb/targetGroup:TargetGroup"


def _target(plan, listener):
    arn = listener.inputs["defaultActions"][0]["targetGroupArn"]
    return next(t for t in plan.of_type(TG) if t.outputs["arn"] == arn)


def _listener_of(plan, lb_name):
    lb = plan.named(LB, lb_name)
    return next(
        lst for lst in plan.of_type(LISTENER) if lst.inputs["loadBalancerArn"] == lb.outputs["arn"]
    )


def test_client_alb(home_plan) -> None:
    lb = home_plan.named(LB, "prod-use1-client")
    assert lb.inputs["internal"] is False and lb.inputs["loadBalancerType"] == "application"
    assert lb.inputs["idleTimeout"] >= 3600
    listener = _listener_of(home_plan, "prod-use1-client")
    assert (listener.inputs["protocol"], listener.inputs["port"]) == ("HTTPS", 443)
    # the issued certificate, once validated
    certificate = home_plan.named("aws:acm/certificate:Certificate", "prod-use1-client-tls")
    assert listener.inputs["certificateArn"] == certificate.outputs["arn"]
    target = _target(home_plan, listener)
    assert (target.inputs["protocol"], target.inputs["port"]) == ("HTTP", 8080)
    assert target.inputs["healthCheck"]["path"] == "/readyz"
    assert target.inputs["stickiness"] == {
        "enabled": True,
        "type": "lb_cookie",
        "cookieDuration": 86400,
    }


def test_client_alb_refuses_internal_paths(home_plan) -> None:
    rule = home_plan.named("aws:lb/listenerRule:ListenerRule", "prod-use1-client-no-internal")
    listener = _listener_of(home_plan, "prod-use1-client")
    assert rule.inputs["listenerArn"] == listener.outputs["arn"]
    assert rule.inputs["conditions"][0]["pathPattern"]["values"] == ["/internal/*"]
    assert rule.inputs["actions"][0]["fixedResponse"]["statusCode"] == "404"


def test_admin_alb_forwards_443_to_9090(home_plan) -> None:
    listener = _listener_of(home_plan, "prod-use1-admin")
    assert (listener.inputs["protocol"], listener.inputs["port"]) == ("HTTPS", 443)
    assert listener.inputs["certificateArn"].startswith("arn:aws:acm:us-east-1:")
    target = _target(home_plan, listener)
    assert target.inputs["port"] == 9090 and target.inputs["healthCheck"]["port"] == "9090"


def test_signaling_lb_is_internal_on_8080_in_private_subnets(home_plan) -> None:
    lb = home_plan.named(LB, "prod-use1-signaling")
    assert lb.inputs["internal"] is True
    private = {s.id for s in home_plan.of_type("aws:ec2/subnet:Subnet") if "private" in s.name}
    assert set(lb.inputs["subnets"]) == private
    listener = _listener_of(home_plan, "prod-use1-signaling")
    assert (listener.inputs["protocol"], listener.inputs["port"]) == ("HTTP", 8080)
    assert "certificateArn" not in listener.inputs
    assert _target(home_plan, listener).inputs["port"] == 8080


def test_media_nodes_have_no_load_balancer(home_plan, dev_plan) -> None:
    # Clients reach each media node at its own address; TURN is on 3478, never TLS on 443.
    assert not [lb.name for lb in home_plan.of_type(LB) if "turn" in lb.name]
    assert sorted(lb.name for lb in dev_plan.of_type(LB)) == [
        "dev-use1-admin",
        "dev-use1-client",
        "dev-use1-signaling",
    ]
    assert one(dev_plan.resources, "aws:autoscaling/group:Group", "dev-use1-media").inputs.get(
        "targetGroupArns"
    ) in (None, [])
    assert len(of_type(dev_plan.resources, LISTENER)) == 3
