/**
 * The origin on ECS Fargate: the serving task (the origin and its metrics collector), the
 * one-off migration task, the service with the deployment circuit breaker (a release whose tasks
 * never turn healthy is rolled back), and the scaling target and policy.
 *
 * Least privilege, by role:
 * - the serving task's execution role pulls this image, writes to this log group and reads the
 *   serving secret (`nexnum/<stage>/origin`), nothing else;
 * - the serving task's role may only write metrics to this stage's Prometheus workspace: the
 *   origin itself calls no AWS API;
 * - the migration task's execution role reads only the migration secret (the schema owner's URL,
 *   which no serving task ever holds).
 */
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecr from "aws-cdk-lib/aws-ecr";
import * as ecs from "aws-cdk-lib/aws-ecs";
import type * as kms from "aws-cdk-lib/aws-kms";
import * as logs from "aws-cdk-lib/aws-logs";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import { Construct } from "constructs";

import type { Observability } from "./observability";
import {
  HTTP_PORT,
  MIGRATION_SECRETS,
  OPS_PORT,
  SERVING_SECRETS,
  STOP_TIMEOUT_SECS,
  plainSettings,
} from "./settings";
import type { Stage } from "./stages";

/** The image's user (Containerfile: `USER 65532:65532`). */
const IMAGE_USER = "65532:65532";
/** The collector (AWS Distro for OpenTelemetry), pinned. */
const COLLECTOR_IMAGE = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3";

export interface OriginServiceProps {
  readonly stage: Stage;
  readonly vpc: ec2.IVpc;
  readonly cluster: ecs.ICluster;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly observability: Observability;
  /** Encrypts the log group. */
  readonly key: kms.IKey;
  /** Extra plain settings (DB_POOLER's URL comes through the secret). */
  readonly extraEnvironment?: Record<string, string>;
}

export class OriginService extends Construct {
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly migration: ecs.FargateTaskDefinition;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: OriginServiceProps) {
    super(scope, id);
    const { stage } = props;
    const repository = ecr.Repository.fromRepositoryName(this, "Repository", stage.repository);
    const image = ecs.ContainerImage.fromEcrRepository(repository, stage.imageTag);
    // ECS will not start a task whose awslogs group does not exist: it is made here.
    this.logGroup = new logs.LogGroup(this, "Logs", {
      logGroupName: `/nexnum/${stage.name}/origin`,
      retention: retention(stage.logRetentionDays),
      removalPolicy: RemovalPolicy.RETAIN,
      encryptionKey: props.key,
    });
    const servingSecret = secretsmanager.Secret.fromSecretNameV2(
      this,
      "ServingSecret",
      `nexnum/${stage.name}/origin`,
    );
    const migrationSecret = secretsmanager.Secret.fromSecretNameV2(
      this,
      "MigrationSecret",
      `nexnum/${stage.name}/migrate`,
    );

    this.taskDefinition = new ecs.FargateTaskDefinition(this, "Task", {
      family: `nexnum-${stage.name}-origin`,
      cpu: stage.cpu,
      memoryLimitMiB: stage.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    const origin = this.taskDefinition.addContainer("origin", {
      image,
      command: ["serve"],
      user: IMAGE_USER,
      readonlyRootFilesystem: true,
      essential: true,
      environment: { ...plainSettings(stage), ...(props.extraEnvironment ?? {}) },
      secrets: Object.fromEntries(
        SERVING_SECRETS.map((name) => [name, ecs.Secret.fromSecretsManager(servingSecret, name)]),
      ),
      portMappings: [
        { name: "http", containerPort: HTTP_PORT, protocol: ecs.Protocol.TCP },
        { name: "ops", containerPort: OPS_PORT, protocol: ecs.Protocol.TCP },
      ],
      // Liveness: `origin probe` asks /healthz, which a Redis or PostgreSQL outage does not
      // fail (the catalog rides those out); /readyz is for operators and dashboards.
      healthCheck: {
        command: ["CMD", "/usr/local/bin/origin", "probe"],
        interval: Duration.seconds(10),
        timeout: Duration.seconds(3),
        retries: 3,
        startPeriod: Duration.seconds(15),
      },
      stopTimeout: Duration.seconds(STOP_TIMEOUT_SECS),
      ulimits: [{ name: ecs.UlimitName.NOFILE, softLimit: 65536, hardLimit: 65536 }],
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: "origin" }),
    });
    const collector = this.taskDefinition.addContainer("metrics", {
      image: ecs.ContainerImage.fromRegistry(COLLECTOR_IMAGE),
      essential: false,
      readonlyRootFilesystem: true,
      memoryReservationMiB: 64,
      environment: { AOT_CONFIG_CONTENT: props.observability.collectorConfig(stage) },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: "metrics" }),
    });
    collector.addContainerDependencies({
      container: origin,
      condition: ecs.ContainerDependencyCondition.START,
    });
    props.observability.grantRemoteWrite(this.taskDefinition.taskRole);

    // The one-off migration task: `aws ecs run-task --task-definition nexnum-<stage>-migrate`.
    this.migration = new ecs.FargateTaskDefinition(this, "Migrate", {
      family: `nexnum-${stage.name}-migrate`,
      cpu: 256,
      memoryLimitMiB: 512,
    });
    this.migration.addContainer("migrate", {
      image,
      command: ["migrate"],
      user: IMAGE_USER,
      readonlyRootFilesystem: true,
      environment: { ORIGIN_ENV: stage.name, RUST_LOG: "info" },
      secrets: Object.fromEntries(
        MIGRATION_SECRETS.map((name) => [name, ecs.Secret.fromSecretsManager(migrationSecret, name)]),
      ),
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: "migrate" }),
    });

    this.service = new ecs.FargateService(this, "Service", {
      serviceName: `nexnum-${stage.name}-origin`,
      cluster: props.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: stage.minTasks,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      healthCheckGracePeriod: Duration.seconds(30),
      securityGroups: [props.securityGroup],
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      assignPublicIp: false,
      enableExecuteCommand: false,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });
    const scaling = this.service.autoScaleTaskCount({
      minCapacity: stage.minTasks,
      maxCapacity: stage.maxTasks,
    });
    scaling.scaleOnCpuUtilization("Cpu", {
      targetUtilizationPercent: 60,
      scaleInCooldown: Duration.seconds(120),
      scaleOutCooldown: Duration.seconds(60),
    });
  }
}

function retention(days: number): logs.RetentionDays {
  const known = Object.values(logs.RetentionDays).filter((v): v is number => typeof v === "number");
  const fit = known.filter((d) => d >= days).sort((a, b) => a - b)[0];
  return (fit ?? logs.RetentionDays.ONE_YEAR) as logs.RetentionDays;
}
