#!/usr/bin/env bash
# Fetch the JVM jars that the Python wheels lack: Delta Lake (the delta-spark wheel holds no jars) and hadoop-aws
# with its AWS SDK for s3a:// paths. They land in one cache folder whose *.jar files the `spark` dbt target and
# the Spark test fixtures load through `spark.jars`, so Spark starts without resolving anything: offline and fast.
#
#   scripts/spark_jars.sh          # idempotent: downloads only what is missing, prunes jars no longer listed
#
# The folder is LAGO_SPARK_JARS_DIR, default `.spark-jars` at the repo root (git-ignored). Needs `mvn` and Java.
#
# Why not `spark.jars.packages`: Ivy resolves the whole tree at every session start and Delta 4.4's POM pulls
# hadoop-client 3.4.2 and parquet 1.16 beside pyspark 4.2.0's own hadoop-client 3.5.0 and parquet 1.17 (37 jars
# on the classpath instead of 5). These five are exactly what is missing, nothing transitive.
set -euo pipefail
cd "$(dirname "$0")/.."

ARTIFACTS=(
    # Delta Lake built for Spark 4.2 / Scala 2.13, the release the pinned delta-spark wheel (4.4.0) belongs to; no
    # 4.4.1 jars exist on Maven Central.
    io.delta:delta-spark_4.2_2.13:4.4.0
    io.delta:delta-storage:4.4.0
    # s3a://: hadoop-aws matching pyspark 4.2.0's hadoop-client-api-3.5.0.jar, and its compile-scope dependencies
    # from the hadoop-aws 3.5.0 POM (the AWS SDK v2 bundle is large: about 690 MB).
    org.apache.hadoop:hadoop-aws:3.5.0
    software.amazon.awssdk:bundle:2.35.4
    software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.3.1
)
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

mkdir -p "${LAGO_SPARK_JARS_DIR:-.spark-jars}"
JARS_DIR="$(cd "${LAGO_SPARK_JARS_DIR:-.spark-jars}" && pwd)"

wanted=()
missing=()
for coordinate in "${ARTIFACTS[@]}"; do
    IFS=: read -r _group artifact version <<<"$coordinate"
    jar="$artifact-$version.jar"
    wanted+=("$jar")
    [[ -s "$JARS_DIR/$jar" ]] || missing+=("$coordinate")
done

# A jar of an older pin left in the folder would be loaded too: remove what is not listed.
for path in "$JARS_DIR"/*.jar; do
    [[ -e "$path" ]] || continue
    name="$(basename "$path")"
    if [[ ! " ${wanted[*]} " == *" $name "* ]]; then
        echo "spark_jars: removing $name (no longer pinned)"
        rm -f "$path"
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi
if ! command -v mvn >/dev/null 2>&1; then
    echo "spark_jars: Maven (mvn) is needed to fetch ${missing[*]}; install it (Debian: apt-get install maven)" >&2
    exit 1
fi

# Download into a scratch folder and move complete files in, so an interrupted run never leaves a jar that
# looks present; a private local repository keeps the 700 MB from being stored twice.
scratch="$(mktemp -d "$JARS_DIR/.fetch.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
for coordinate in "${missing[@]}"; do
    echo "spark_jars: fetching $coordinate"
    if ! mvn --batch-mode --strict-checksums "-Dmaven.repo.local=$scratch/repository" \
        "$DEPENDENCY_PLUGIN:copy" "-Dartifact=$coordinate" "-DoutputDirectory=$scratch/out" >"$scratch/mvn.log" 2>&1; then
        tail -n 40 "$scratch/mvn.log" >&2
        echo "spark_jars: could not fetch $coordinate (Maven's log above)" >&2
        exit 1
    fi
done
mv "$scratch"/out/*.jar "$JARS_DIR/"
echo "spark_jars: ${#missing[@]} jar(s) ready in $JARS_DIR"
