# syntax=docker/dockerfile:1.7
# Redis for phonereader: the official image with our configuration baked in, run as its own 'redis' user.
FROM redis:7.2-alpine
COPY --chmod=0644 docker/redis.conf /usr/local/etc/redis/redis.conf
USER redis
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=10 CMD ["sh", "-c", "redis-cli ping | grep -q PONG"]
CMD ["redis-server", "/usr/local/etc/redis/redis.conf"]
