#!/usr/bin/env bash
# Builds Fathom, loads the example files into the warehouse at ./fathom-data
# (re-running is harmless: loads are merges), and prints a query over them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
fathom=target/release/fathom
"$fathom" import catalog_entities examples/catalog_entities.ndjson
"$fathom" import deployments examples/deployments.csv
"$fathom" import incidents examples/incidents.csv
"$fathom" sql "
  SELECT c.owner_ref AS team,
         d.entity_ref AS service,
         count(*) AS production_deployments,
         sum(CASE WHEN d.status = 'failure' THEN 1 ELSE 0 END) AS failed,
         (SELECT count(*) FROM incidents i WHERE i.entity_ref = d.entity_ref) AS incidents
  FROM deployments d
  JOIN catalog_entities c ON c.entity_ref = d.entity_ref
  WHERE d.environment = 'production'
  GROUP BY c.owner_ref, d.entity_ref
  ORDER BY production_deployments DESC"
