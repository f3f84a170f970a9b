#!/bin/sh
# Writes redis.conf and sentinel.conf for this pod into /conf (an emptyDir; CONF_DIR), then exits.
# The master is whoever the running sentinels name; with none running (first start), pod 0.
# The StatefulSet passes its own name (REDIS_SET, also its headless Service), the Sentinel master
# name, the pod count and the quorum; the kustomize base and the Helm chart run this same file.
set -eu
OUT="${CONF_DIR:-/conf}"
NAME="${SENTINEL_MASTER_NAME}"
HEADLESS="${REDIS_SET}.${POD_NAMESPACE}.svc.${CLUSTER_DOMAIN:-cluster.local}"
ME="${HOSTNAME}.${HEADLESS}"
MASTER=""
i=0
while [ "$i" -lt "$REDIS_REPLICAS" ]; do
  peer="${REDIS_SET}-${i}.${HEADLESS}"
  i=$((i + 1))
  [ "$peer" = "$ME" ] && continue
  answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 redis-cli -h "$peer" -p 26379 \
    sentinel get-master-addr-by-name "$NAME" 2>/dev/null | head -n 1 || true)
  case "$answer" in
    "" | *ERR* | *NOAUTH* | *"Could not connect"*) ;;
    *) MASTER="$answer"; break ;;
  esac
done
[ -n "$MASTER" ] || MASTER="${REDIS_SET}-0.${HEADLESS}"

cat > "${OUT}/redis.conf" <<CONF
port 6379
bind * -::*
protected-mode no
dir /data
save ""
appendonly no
maxmemory 200mb
maxmemory-policy volatile-ttl
requirepass ${REDIS_PASSWORD}
masterauth ${REDIS_PASSWORD}
replica-announce-ip ${ME}
CONF
if [ "$MASTER" != "$ME" ]; then
  echo "replicaof ${MASTER} 6379" >> "${OUT}/redis.conf"
fi

cat > "${OUT}/sentinel.conf" <<CONF
port 26379
bind * -::*
protected-mode no
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${ME}
requirepass ${REDIS_PASSWORD}
sentinel monitor ${NAME} ${MASTER} 6379 ${SENTINEL_QUORUM}
sentinel auth-pass ${NAME} ${REDIS_PASSWORD}
sentinel down-after-milliseconds ${NAME} 5000
sentinel failover-timeout ${NAME} 30000
sentinel parallel-syncs ${NAME} 1
CONF
echo "configured ${ME}: master ${MASTER}"
