/** The network: an existing VPC (by its ids, no lookup), or a new one with flow logs. */
import * as ec2 from "aws-cdk-lib/aws-ec2";
import type * as kms from "aws-cdk-lib/aws-kms";
import * as logs from "aws-cdk-lib/aws-logs";
import { RemovalPolicy } from "aws-cdk-lib";
import type { Construct } from "constructs";

import type { Stage } from "./stages";

export function network(scope: Construct, stage: Stage, key: kms.IKey): ec2.IVpc {
  if (stage.vpc) {
    return ec2.Vpc.fromVpcAttributes(scope, "Vpc", {
      vpcId: stage.vpc.vpcId,
      availabilityZones: stage.vpc.availabilityZones,
      publicSubnetIds: stage.vpc.publicSubnetIds,
      privateSubnetIds: stage.vpc.privateSubnetIds,
    });
  }
  const flowLogs = new logs.LogGroup(scope, "VpcFlowLogs", {
    retention: logs.RetentionDays.ONE_MONTH,
    removalPolicy: RemovalPolicy.RETAIN,
    encryptionKey: key,
  });
  return new ec2.Vpc(scope, "Vpc", {
    maxAzs: 2,
    natGateways: 1,
    subnetConfiguration: [
      { name: "public", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
      { name: "tasks", subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 },
    ],
    flowLogs: {
      all: {
        destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
        trafficType: ec2.FlowLogTrafficType.REJECT,
      },
    },
  });
}
