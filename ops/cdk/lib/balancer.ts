/**
 * The origin's public entrance: an Application Load Balancer that accepts HTTPS from Cloudflare's
 * ranges only (the edge is the origin's one client), and its target group.
 *
 * The target group's health check is liveness (`/healthz` on the operator port), never readiness:
 * ECS replaces a task the balancer marks unhealthy, and `/readyz` fails on any Redis or
 * PostgreSQL error, so a dependency blip would restart the whole fleet at once, undoing the
 * catalog's designed ride-through (the fail-open limits, the stale answers). `make fleet` runs
 * HAProxy with these same numbers through a Redis and a PostgreSQL outage.
 */
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as elbv2 from "aws-cdk-lib/aws-elasticloadbalancingv2";
import * as s3 from "aws-cdk-lib/aws-s3";
import { CfnResource, Duration, RemovalPolicy } from "aws-cdk-lib";
import { Construct } from "constructs";

import { CLOUDFLARE_IPV4 } from "./cloudflare";
import { HTTP_PORT, OPS_PORT, SHUTDOWN_GRACE_SECS } from "./settings";
import type { Stage } from "./stages";

/** The target group's health check: the numbers `make fleet`'s HAProxy uses too. */
export const HEALTH_CHECK = {
  path: "/healthz",
  port: OPS_PORT,
  intervalSecs: 10,
  timeoutSecs: 5,
  healthyThreshold: 2,
  unhealthyThreshold: 3,
};

export interface BalancerProps {
  readonly stage: Stage;
  readonly vpc: ec2.IVpc;
  readonly service: ecs.FargateService;
  readonly taskSecurityGroup: ec2.ISecurityGroup;
}

export class Balancer extends Construct {
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly targetGroup: elbv2.ApplicationTargetGroup;

  constructor(scope: Construct, id: string, props: BalancerProps) {
    super(scope, id);
    const sg = new ec2.SecurityGroup(this, "SecurityGroup", {
      vpc: props.vpc,
      description: "Origin load balancer - HTTPS from Cloudflare only",
      allowAllOutbound: false,
    });
    for (const cidr of CLOUDFLARE_IPV4) sg.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "Cloudflare");
    sg.addEgressRule(props.taskSecurityGroup, ec2.Port.tcp(HTTP_PORT), "requests to the origin");
    sg.addEgressRule(props.taskSecurityGroup, ec2.Port.tcp(OPS_PORT), "health checks");
    props.taskSecurityGroup.addIngressRule(sg, ec2.Port.tcp(HTTP_PORT), "from the load balancer");
    props.taskSecurityGroup.addIngressRule(sg, ec2.Port.tcp(OPS_PORT), "health checks");

    const logs = new s3.Bucket(this, "AccessLogs", {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: true,
      lifecycleRules: [{ expiration: Duration.days(90), noncurrentVersionExpiration: Duration.days(7) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    (logs.node.defaultChild as CfnResource).addMetadata("checkov", {
      skip: [{ id: "CKV_AWS_18", comment: "The access-log bucket itself: logging it would log the logs" }],
    });
    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, "LoadBalancer", {
      vpc: props.vpc,
      internetFacing: true,
      securityGroup: sg,
      dropInvalidHeaderFields: true,
      // IPv4: Cloudflare reaches origins over IPv4 whatever the visitor used.
      ipAddressType: elbv2.IpAddressType.IPV4,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
    });
    this.loadBalancer.logAccessLogs(logs, "origin");
    const listener = this.loadBalancer.addListener("Https", {
      port: 443,
      protocol: elbv2.ApplicationProtocol.HTTPS,
      certificates: [elbv2.ListenerCertificate.fromArn(props.stage.certificateArn)],
      sslPolicy: elbv2.SslPolicy.RECOMMENDED_TLS,
      open: false,
    });
    this.targetGroup = listener.addTargets("Origin", {
      port: HTTP_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [props.service.loadBalancerTarget({ containerName: "origin", containerPort: HTTP_PORT })],
      // At least the drain: in-flight requests finish before the task is let go.
      deregistrationDelay: Duration.seconds(SHUTDOWN_GRACE_SECS + 5),
      healthCheck: {
        path: HEALTH_CHECK.path,
        port: String(HEALTH_CHECK.port),
        interval: Duration.seconds(HEALTH_CHECK.intervalSecs),
        timeout: Duration.seconds(HEALTH_CHECK.timeoutSecs),
        healthyThresholdCount: HEALTH_CHECK.healthyThreshold,
        unhealthyThresholdCount: HEALTH_CHECK.unhealthyThreshold,
        healthyHttpCodes: "200",
      },
    });
  }
}
