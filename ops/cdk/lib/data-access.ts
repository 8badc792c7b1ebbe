/**
 * The tasks' way to the managed data stores: ingress on the stores' own security groups (which
 * the stores' stacks own; imported by id), and, when the stage asks for it, PgBouncer in
 * transaction mode as a service of its own (required past 50 tasks: `origin check
 * --ecs-template` fails a plan without it).
 *
 * Why PgBouncer and not RDS Proxy: PgBouncer in transaction mode is what the test suite runs the
 * origin through (`make test`'s third pass: PgBouncer 1.18, TLS both sides). RDS Proxy is not
 * tested here. The PgBouncer container image and its variables below are not tested here either
 * (docs/deploy.md marks them so); the configuration they express is `ops/pgbouncer.ini`'s.
 */
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import type * as kms from "aws-cdk-lib/aws-kms";
import * as logs from "aws-cdk-lib/aws-logs";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as servicediscovery from "aws-cdk-lib/aws-servicediscovery";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import { Construct } from "constructs";

import type { Stage } from "./stages";

export const PGBOUNCER_PORT = 6432;
const PGBOUNCER_IMAGE = "public.ecr.aws/bitnami/pgbouncer:1.24.1";

export interface DataAccessProps {
  readonly stage: Stage;
  readonly vpc: ec2.IVpc;
  readonly cluster: ecs.Cluster;
  readonly taskSecurityGroup: ec2.ISecurityGroup;
  readonly key: kms.IKey;
}

export class DataAccess extends Construct {
  /** The PgBouncer service's address (`DATABASE_URL` names it), when there is one. */
  readonly pgbouncerHost?: string;

  constructor(scope: Construct, id: string, props: DataAccessProps) {
    super(scope, id);
    const { stage } = props;
    const database = ec2.SecurityGroup.fromSecurityGroupId(this, "Database", stage.databaseSecurityGroupId, {
      allowAllOutbound: false,
    });
    const redis = ec2.SecurityGroup.fromSecurityGroupId(this, "Redis", stage.redisSecurityGroupId, {
      allowAllOutbound: false,
    });
    redis.addIngressRule(props.taskSecurityGroup, ec2.Port.tcp(stage.redisPort), "origin tasks");
    if (!stage.pgbouncer) {
      database.addIngressRule(props.taskSecurityGroup, ec2.Port.tcp(stage.databasePort), "origin tasks");
      return;
    }
    const sg = new ec2.SecurityGroup(this, "PgBouncerSecurityGroup", {
      vpc: props.vpc,
      description: "PgBouncer: from the origin tasks, to PostgreSQL",
      allowAllOutbound: true,
    });
    sg.addIngressRule(props.taskSecurityGroup, ec2.Port.tcp(PGBOUNCER_PORT), "origin tasks");
    database.addIngressRule(sg, ec2.Port.tcp(stage.databasePort), "PgBouncer");
    const namespace = new servicediscovery.PrivateDnsNamespace(this, "Namespace", {
      name: `nexnum-${stage.name}.internal`,
      vpc: props.vpc,
    });
    const secret = secretsmanager.Secret.fromSecretNameV2(this, "Secret", `nexnum/${stage.name}/pgbouncer`);
    const logGroup = new logs.LogGroup(this, "Logs", {
      logGroupName: `/nexnum/${stage.name}/pgbouncer`,
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.RETAIN,
      encryptionKey: props.key,
    });
    const task = new ecs.FargateTaskDefinition(this, "Task", {
      family: `nexnum-${stage.name}-pgbouncer`,
      cpu: 256,
      memoryLimitMiB: 512,
    });
    task.addContainer("pgbouncer", {
      image: ecs.ContainerImage.fromRegistry(PGBOUNCER_IMAGE),
      readonlyRootFilesystem: false,
      portMappings: [{ containerPort: PGBOUNCER_PORT }],
      environment: {
        POSTGRESQL_HOST: stage.databaseHost,
        POSTGRESQL_PORT: String(stage.databasePort),
        PGBOUNCER_PORT: String(PGBOUNCER_PORT),
        PGBOUNCER_POOL_MODE: "transaction",
        PGBOUNCER_MAX_CLIENT_CONN: String(stage.maxTasks * 10 + 50),
        PGBOUNCER_DEFAULT_POOL_SIZE: "40",
        PGBOUNCER_IGNORE_STARTUP_PARAMETERS: "extra_float_digits",
        PGBOUNCER_AUTH_TYPE: "scram-sha-256",
        PGBOUNCER_CLIENT_TLS_SSLMODE: "require",
        PGBOUNCER_SERVER_TLS_SSLMODE: "verify-full",
      },
      secrets: {
        POSTGRESQL_USERNAME: ecs.Secret.fromSecretsManager(secret, "username"),
        POSTGRESQL_PASSWORD: ecs.Secret.fromSecretsManager(secret, "password"),
      },
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: "pgbouncer" }),
    });
    const service = new ecs.FargateService(this, "Service", {
      serviceName: `nexnum-${stage.name}-pgbouncer`,
      cluster: props.cluster,
      taskDefinition: task,
      desiredCount: 2,
      minHealthyPercent: 50,
      circuitBreaker: { enable: true, rollback: true },
      securityGroups: [sg],
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      cloudMapOptions: {
        cloudMapNamespace: namespace,
        name: "pgbouncer",
        dnsTtl: Duration.seconds(10),
      },
    });
    this.pgbouncerHost = `pgbouncer.${namespace.namespaceName}`;
    void service;
  }
}
