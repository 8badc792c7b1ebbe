/**
 * Where the origin's metrics go and who hears of an alert: an Amazon Managed Service for
 * Prometheus workspace, the alert rules of `ops/alerts.yml` loaded into it as they are (each with
 * its runbook link into docs/operations.md), its alert manager routing to an SNS topic with the
 * on-call address subscribed, and the collector's configuration for the task's sidecar (which
 * scrapes the origin's `/metrics` on the operator port, `METRICS_ADDR`).
 *
 * Why a sidecar scraping localhost and not a central Prometheus: tasks come and go with the
 * scaling target; a sidecar needs no discovery, and the operator port never leaves the task.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import * as aps from "aws-cdk-lib/aws-aps";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as kms from "aws-cdk-lib/aws-kms";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import { Stack } from "aws-cdk-lib";
import { Construct } from "constructs";

import { OPS_PORT } from "./settings";
import type { Stage } from "./stages";

export class Observability extends Construct {
  readonly workspace: aps.CfnWorkspace;
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, stage: Stage, key: kms.IKey) {
    super(scope, id);
    const region = Stack.of(this).region;
    this.topic = new sns.Topic(this, "Alerts", {
      displayName: `NexNum ${stage.name} alerts`,
      enforceSSL: true,
      masterKey: key,
    });
    // The workspace's alert manager publishes to the encrypted topic.
    key.grantEncryptDecrypt(new iam.ServicePrincipal("aps.amazonaws.com"));
    key.grantEncryptDecrypt(new iam.ServicePrincipal("cloudwatch.amazonaws.com"));
    this.topic.addSubscription(new subscriptions.EmailSubscription(stage.alertEmail));
    const alertmanager = [
      "alertmanager_config: |",
      "  route:",
      "    receiver: oncall",
      "    group_by: [alertname]",
      "    repeat_interval: 4h",
      "  receivers:",
      "    - name: oncall",
      "      sns_configs:",
      `        - topic_arn: ${this.topic.topicArn}`,
      "          sigv4:",
      `            region: ${region}`,
      "",
    ].join("\n");
    this.workspace = new aps.CfnWorkspace(this, "Workspace", {
      alias: `nexnum-${stage.name}`,
      alertManagerDefinition: alertmanager,
    });
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal("aps.amazonaws.com")],
        actions: ["sns:Publish", "sns:GetTopicAttributes"],
        resources: [this.topic.topicArn],
        conditions: { ArnEquals: { "aws:SourceArn": this.workspace.attrArn } },
      }),
    );
    new aps.CfnRuleGroupsNamespace(this, "Rules", {
      workspace: this.workspace.attrArn,
      name: "nexnum-origin",
      data: fs.readFileSync(path.join(__dirname, "..", "..", "..", "alerts.yml"), "utf8"),
    });
  }

  /** The collector's configuration: scrape the origin's operator port, write to the workspace. */
  collectorConfig(stage: Stage): string {
    const region = Stack.of(this).region;
    return [
      "receivers:",
      "  prometheus:",
      "    config:",
      "      scrape_configs:",
      "        - job_name: nexnum-origin",
      "          scrape_interval: 15s",
      `          static_configs: [{targets: ['127.0.0.1:${OPS_PORT}'], labels: {stage: ${stage.name}}}]`,
      "exporters:",
      "  prometheusremotewrite:",
      `    endpoint: ${this.workspace.attrPrometheusEndpoint}api/v1/remote_write`,
      "    auth: {authenticator: sigv4auth}",
      "extensions:",
      "  sigv4auth:",
      `    region: ${region}`,
      "    service: aps",
      "  health_check: {}",
      "service:",
      "  extensions: [sigv4auth, health_check]",
      "  pipelines:",
      "    metrics: {receivers: [prometheus], exporters: [prometheusremotewrite]}",
      "",
    ].join("\n");
  }

  /** What the collector may do: write samples to this workspace, nothing else. */
  grantRemoteWrite(role: iam.IGrantable): void {
    role.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ["aps:RemoteWrite"],
        resources: [this.workspace.attrArn],
      }),
    );
  }
}
