/**
 * The CDK app: staging and production from one definition (lib/stack.ts), environment-agnostic
 * (synthesized offline, no lookups), checked by cdk-nag's AWS Solutions rules at synthesis.
 *
 *   npx cdk synth                                   # both stages into cdk.out/ (make infra)
 *   npx cdk deploy NexnumStaging -c nexnum:staging:imageTag=<tag> …   # docs/deploy.md
 */
import { App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";

import { NexnumStack } from "../lib/stack";
import { STAGES, stage } from "../lib/stages";

/** Every rule not followed, and why. Each is a decision; none hides a finding nobody read. */
const ACKNOWLEDGED = [
  {
    id: "AwsSolutions-ECS2",
    reason:
      "The plain environment holds only non-secret settings; every credential comes from Secrets Manager (origin-settings.json marks them and synthesis refuses one in the open).",
  },
  {
    id: "AwsSolutions-IAM5[Resource::*]",
    reason:
      "ecr:GetAuthorizationToken, which the execution roles need to pull the image, has no resource to scope it to (AWS documents Resource '*' for it).",
  },
  {
    id: "AwsSolutions-S1",
    reason: "The bucket holds the load balancer's access logs; logging access to it would log the logs.",
  },
];

const app = new App();
for (const name of STAGES) {
  const stack = new NexnumStack(app, stage(app, name));
  for (const rule of ACKNOWLEDGED) Validations.of(stack).acknowledge(rule);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
