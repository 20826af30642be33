#!/usr/bin/env bash
# Fetch the JVM jars that the Python wheels lack: Delta Lake (the delta-spark wheel holds no jars) and, for an
# s3:// lake only, hadoop-aws with the AWS SDK. They land in one cache folder whose *.jar files the `spark` dbt
# target and the Spark test fixtures load through the driver's class path, so Spark starts without resolving
# anything: offline and fast.
#
#   scripts/spark_jars.sh          # Delta Lake only (about 10 MB): enough for a local lake
#   scripts/spark_jars.sh --s3     # also s3a:// (about 660 MB, mostly the AWS SDK bundle); implied when LAKE_URI
#                                  # is an s3:// URI
#
# Idempotent: downloads only what is missing, prunes jars that are no longer pinned (the S3 jars stay once
# fetched). The folder is LAGO_SPARK_JARS_DIR, default `.spark-jars` at the repo root (git-ignored). Needs `mvn`
# and Java.
#
# Why not `spark.jars.packages`: Ivy resolves the whole tree at every session start and Delta 4.4's POM pulls
# hadoop-client 3.4.2 and parquet 1.16 beside pyspark 4.2.0's own hadoop-client 3.5.0 and parquet 1.17 (37 jars
# on the classpath instead of 5). These are exactly what is missing, nothing transitive.
set -euo pipefail
cd "$(dirname "$0")/.."

DELTA_ARTIFACTS=(
    # Delta Lake built for Spark 4.2 / Scala 2.13, the release the pinned delta-spark wheel (4.4.0) belongs to; no
    # 4.4.1 jars exist on Maven Central.
    io.delta:delta-spark_4.2_2.13:4.4.0
    io.delta:delta-storage:4.4.0
)
S3_ARTIFACTS=(
    # s3a://: hadoop-aws matching pyspark 4.2.0's hadoop-client-api-3.5.0.jar, and its compile-scope dependencies
    # from the hadoop-aws 3.5.0 POM (the AWS SDK v2 bundle alone is about 650 MB).
    org.apache.hadoop:hadoop-aws:3.5.0
    software.amazon.awssdk:bundle:2.35.4
    software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.3.1
)
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

with_s3=0
for argument in "$@"; do
    case "$argument" in
        --s3) with_s3=1 ;;
        -h | --help)
            sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "spark_jars: unknown option $argument (use --s3 or --help)" >&2
            exit 2
            ;;
    esac
done
if [[ "${LAKE_URI:-}" == s3://* ]]; then
    with_s3=1
fi

mkdir -p "${LAGO_SPARK_JARS_DIR:-.spark-jars}"
JARS_DIR="$(cd "${LAGO_SPARK_JARS_DIR:-.spark-jars}" && pwd)"

jar_of() {
    local _group artifact version
    IFS=: read -r _group artifact version <<<"$1"
    echo "$artifact-$version.jar"
}

pinned=()
for coordinate in "${DELTA_ARTIFACTS[@]}" "${S3_ARTIFACTS[@]}"; do
    pinned+=("$(jar_of "$coordinate")")
done
wanted=("${DELTA_ARTIFACTS[@]}")
if ((with_s3)); then
    wanted+=("${S3_ARTIFACTS[@]}")
fi
missing=()
for coordinate in "${wanted[@]}"; do
    [[ -s "$JARS_DIR/$(jar_of "$coordinate")" ]] || missing+=("$coordinate")
done

# A jar of an older pin left in the folder would be loaded too: remove what is not pinned.
for path in "$JARS_DIR"/*.jar; do
    [[ -e "$path" ]] || continue
    name="$(basename "$path")"
    if [[ ! " ${pinned[*]} " == *" $name "* ]]; then
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
# looks present; a private local repository keeps the jars from being stored twice.
scratch="$(mktemp -d "$JARS_DIR/.fetch.XXXXXX")"
watcher=""
cleanup() {
    [[ -z "$watcher" ]] || kill "$watcher" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

# Maven in batch mode prints nothing while a file downloads: report the bytes received so far every few seconds.
show_progress() {
    local coordinate="$1" started="$2"
    while sleep 5; do
        local bytes
        bytes="$(du -sb "$scratch/repository" 2>/dev/null | cut -f1)"
        printf 'spark_jars:   %s: %d MB received, %d s\n' "$coordinate" "$((${bytes:-0} / 1048576))" \
            "$((SECONDS - started))"
    done
}

total_started=$SECONDS
for coordinate in "${missing[@]}"; do
    echo "spark_jars: fetching $coordinate"
    show_progress "$coordinate" "$SECONDS" &
    watcher=$!
    if ! mvn --batch-mode --strict-checksums "-Dmaven.repo.local=$scratch/repository" \
        "$DEPENDENCY_PLUGIN:copy" "-Dartifact=$coordinate" "-DoutputDirectory=$scratch/out" >"$scratch/mvn.log" 2>&1; then
        tail -n 40 "$scratch/mvn.log" >&2
        echo "spark_jars: could not fetch $coordinate (Maven's log above)" >&2
        exit 1
    fi
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    watcher=""
    jar="$scratch/out/$(jar_of "$coordinate")"
    echo "spark_jars:   $(jar_of "$coordinate"): $(($(stat -c %s "$jar") / 1024)) KB"
done
mv "$scratch"/out/*.jar "$JARS_DIR/"
echo "spark_jars: ${#missing[@]} jar(s) ready in $JARS_DIR ($((SECONDS - total_started)) s)"
if ((!with_s3)); then
    echo "spark_jars: for an s3:// lake, run scripts/spark_jars.sh --s3 (about 660 MB more)"
fi
