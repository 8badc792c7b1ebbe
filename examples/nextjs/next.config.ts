import path from "node:path";
import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // The typed client is TypeScript source in ../../clients/ts.
  transpilePackages: ["@nexnum/api-client"],
  // That package lives outside this folder: let the bundler see the repository.
  turbopack: { root: path.join(__dirname, "../..") },
  outputFileTracingRoot: path.join(__dirname, "../.."),
};

export default nextConfig;
