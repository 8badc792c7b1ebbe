/**
 * One stage of NexNum's origin on AWS, in the order of the deploy guide: network, cluster,
 * observability, data-store access, the service, its load balancer, and the CloudWatch alarm
 * that still fires when the metrics pipeline itself is down.
 */
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as actions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import { CfnOutput, Duration, Stack, type StackProps, Tags } from "aws-cdk-lib";
import type { Construct } from "constructs";

import { Balancer } from "./balancer";
import { DataAccess } from "./data-access";
import { network } from "./network";
import { Observability } from "./observability";
import { OriginService } from "./service";
import type { Stage } from "./stages";

export class NexnumStack extends Stack {
  constructor(scope: Construct, stage: Stage, props: StackProps = {}) {
    super(scope, stage.stackName, {
      ...props,
      env: { region: stage.region },
      description: `NexNum catalog origin (${stage.name}): ECS Fargate behind an ALB`,
    });
    Tags.of(this).add("project", "nexnum");
    Tags.of(this).add("stage", stage.name);

    // One key for what this stage keeps at rest outside the databases: its logs and its alerts.
    const key = new kms.Key(this, "Key", {
      alias: `alias/nexnum-${stage.name}`,
      description: `NexNum ${stage.name}: logs and alert messages`,
      enableKeyRotation: true,
    });
    key.grantEncryptDecrypt(new iam.ServicePrincipal(`logs.${stage.region}.amazonaws.com`));
    const vpc = network(this, stage, key);
    const cluster = new ecs.Cluster(this, "Cluster", {
      vpc,
      clusterName: `nexnum-${stage.name}`,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    const observability = new Observability(this, "Observability", stage, key);
    const taskSecurityGroup = new ec2.SecurityGroup(this, "TaskSecurityGroup", {
      vpc,
      description: "Origin tasks: from the load balancer; out to the data stores and the purge/sync/Sentry endpoints",
      allowAllOutbound: true,
    });
    const data = new DataAccess(this, "DataAccess", { stage, vpc, cluster, taskSecurityGroup, key });
    const origin = new OriginService(this, "Origin", {
      stage,
      vpc,
      cluster,
      securityGroup: taskSecurityGroup,
      observability,
      key,
    });
    const balancer = new Balancer(this, "Balancer", {
      stage,
      vpc,
      service: origin.service,
      taskSecurityGroup,
    });

    // Fires even when no metric reaches Prometheus (the collector down, every task gone).
    const healthy = balancer.targetGroup.metrics.healthyHostCount({
      period: Duration.minutes(1),
      statistic: "Minimum",
    });
    const alarm = new cloudwatch.Alarm(this, "NoHealthyOrigin", {
      alarmName: `nexnum-${stage.name}-no-healthy-origin`,
      alarmDescription:
        "No origin task passes the load balancer's health check. Runbook: docs/operations.md#nexnumoriginsdown",
      metric: healthy,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 2,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    alarm.addAlarmAction(new actions.SnsAction(observability.topic));

    new CfnOutput(this, "OriginUrl", {
      value: `https://${balancer.loadBalancer.loadBalancerDnsName}`,
      description: "Point the origin's DNS name (the edge's ORIGIN_URL) at this balancer",
    });
    new CfnOutput(this, "MigrationTask", { value: origin.migration.taskDefinitionArn });
    if (data.pgbouncerHost) new CfnOutput(this, "PgBouncerHost", { value: data.pgbouncerHost });
  }
}
