#!/bin/sh
# One-shot (temporalio/admin-tools): the namespace VisitFlow uses and its custom search attributes
# (names and types from visitflow.workflows.visit.SEARCH_ATTRIBUTES). Idempotent.
set -eu
ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-720h}"  # how long closed visits' histories are kept
T="temporal --address $ADDRESS"

tries=0
until $T operator cluster health 2>/dev/null | grep -q SERVING; do
  tries=$((tries + 1))
  [ "$tries" -ge 60 ] && { echo "Temporal at $ADDRESS did not become healthy" >&2; exit 1; }
  echo "waiting for Temporal at $ADDRESS ..."; sleep 2
done

if ! $T operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  $T operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION" \
     --description "VisitFlow visits"
fi
tries=0
until $T operator search-attribute list --namespace "$NAMESPACE" >/dev/null 2>&1; do  # namespace cache
  tries=$((tries + 1))
  [ "$tries" -ge 60 ] && { echo "namespace $NAMESPACE did not become usable" >&2; exit 1; }
  sleep 1
done

created=0
for pair in VisitState:Keyword VisitClinician:Keyword VisitPayer:Keyword VisitServiceDate:Datetime; do
  name="${pair%%:*}"; kind="${pair##*:}"
  if $T operator search-attribute list --namespace "$NAMESPACE" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    $T operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$kind"
    created=1
  fi
done
if [ "$created" = 1 ]; then
  # The frontend caches search attributes (about a minute) and rejects unknown ones when a workflow
  # starts; wait that out once so the workers and the API never meet a stale cache.
  echo "waiting ${SEARCH_ATTRIBUTE_CACHE_WAIT:-65}s for the search attribute cache to refresh"
  sleep "${SEARCH_ATTRIBUTE_CACHE_WAIT:-65}"
fi
echo "namespace $NAMESPACE is ready with VisitFlow's search attributes"
