#!/bin/sh
# Writes redis.conf and sentinel.conf for this pod into /conf (an emptyDir), then exits.
# The master is whoever the running sentinels name; with none running (first start), pod 0.
set -eu
NAME=dex-forward-auth
HEADLESS="dex-forward-auth-redis.${POD_NAMESPACE}.svc.${CLUSTER_DOMAIN:-cluster.local}"
ME="${HOSTNAME}.${HEADLESS}"
MASTER=""
for i in 0 1 2; do
  peer="dex-forward-auth-redis-${i}.${HEADLESS}"
  [ "$peer" = "$ME" ] && continue
  answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 redis-cli -h "$peer" -p 26379 \
    sentinel get-master-addr-by-name "$NAME" 2>/dev/null | head -n 1 || true)
  case "$answer" in
    "" | *ERR* | *NOAUTH* | *"Could not connect"*) ;;
    *) MASTER="$answer"; break ;;
  esac
done
[ -n "$MASTER" ] || MASTER="dex-forward-auth-redis-0.${HEADLESS}"

cat > /conf/redis.conf <<CONF
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
  echo "replicaof ${MASTER} 6379" >> /conf/redis.conf
fi

cat > /conf/sentinel.conf <<CONF
port 26379
bind * -::*
protected-mode no
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${ME}
requirepass ${REDIS_PASSWORD}
sentinel monitor ${NAME} ${MASTER} 6379 2
sentinel auth-pass ${NAME} ${REDIS_PASSWORD}
sentinel down-after-milliseconds ${NAME} 5000
sentinel failover-timeout ${NAME} 30000
sentinel parallel-syncs ${NAME} 1
CONF
echo "configured ${ME}: master ${MASTER}"
