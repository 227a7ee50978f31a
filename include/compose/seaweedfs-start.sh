#!/bin/sh
# SeaweedFS of docker-compose.yaml: master, volume, filer and S3 gateway in one process.
# seaweedfs-s3.json beside this script names the one S3 identity; its keys are placeholders
# filled in here from .env, so no key is ever committed. Object Lock needs nothing here: Dereg
# creates each backup bucket with Object Lock enabled (and so versioning) and writes every
# object in COMPLIANCE mode until the manifest's retention ends.
set -eu
: "${DEREG_S3_ACCESS_KEY:?set DEREG_S3_ACCESS_KEY in .env}"
: "${DEREG_S3_SECRET_KEY:?set DEREG_S3_SECRET_KEY in .env}"
umask 077
sed -e "s|\${DEREG_S3_ACCESS_KEY}|${DEREG_S3_ACCESS_KEY}|g" \
    -e "s|\${DEREG_S3_SECRET_KEY}|${DEREG_S3_SECRET_KEY}|g" \
    "$(dirname "$0")/seaweedfs-s3.json" > /tmp/s3.json
exec weed server \
    -dir=/data \
    -ip=seaweedfs \
    -ip.bind=0.0.0.0 \
    -master.volumeSizeLimitMB=1024 \
    -volume.max=0 \
    -s3 \
    -s3.port=8333 \
    -s3.config=/tmp/s3.json
