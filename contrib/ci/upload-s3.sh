#!/bin/sh
# upload-s3.sh REPO_DIR s3://BUCKET -- uploads an OTA repository to object storage in the order
# devices need (docs/repository.md, "Serving from object storage and a CDN"): bundles, then
# targets metadata, then snapshots, then root, then timestamp.json last, so that whatever a
# device can see named is already there. Each kind of file gets its cache policy: everything
# versioned or content-addressed is immutable; root.json and timestamp.json are short-lived.
# Needs the AWS CLI (any S3-compatible store: add --endpoint-url through AWS_ENDPOINT_URL).
set -eu
repo=$1
bucket=${2%/}
immutable="public, max-age=31536000, immutable"
json="--content-type application/json"
# 1. Bundles (content-addressed names: never overwritten).
if [ -d "$repo/targets" ]; then
  aws s3 sync "$repo/targets" "$bucket/targets" --content-type application/octet-stream \
    --cache-control "$immutable"
fi
# 2. Targets metadata, top-level and delegated (N.targets.json, N.ROLE.json).
aws s3 sync "$repo/metadata" "$bucket/metadata" $json --cache-control "$immutable" \
  --exclude "*" --include "*.json" --exclude "*.snapshot.json" --exclude "*.root.json" \
  --exclude root.json --exclude timestamp.json
# 3. Snapshots, which name those targets versions.
aws s3 sync "$repo/metadata" "$bucket/metadata" $json --cache-control "$immutable" \
  --exclude "*" --include "*.snapshot.json"
# 4. Root versions (after a rotation), then the unversioned root.json.
aws s3 sync "$repo/metadata" "$bucket/metadata" $json --cache-control "$immutable" \
  --exclude "*" --include "*.root.json"
aws s3 cp "$repo/metadata/root.json" "$bucket/metadata/root.json" $json \
  --cache-control "public, max-age=60, must-revalidate"
# 5. The timestamp, last: from this moment devices see the release.
aws s3 cp "$repo/metadata/timestamp.json" "$bucket/metadata/timestamp.json" $json \
  --cache-control "public, max-age=10, must-revalidate"
