-- Links imported into a tenant other than default before imports recorded the
-- tenant's provider configuration version had none, and no instance could
-- refresh or revoke them (the token API answered 503). They get the version
-- new links of that tenant and provider were made with: the newest one.
UPDATE "links" AS l
SET "config_version" = c."version"
FROM (
	SELECT "tenant", "provider", max("version") AS "version"
	FROM "tenant_provider_configs"
	GROUP BY "tenant", "provider"
) AS c
WHERE l."tenant" = c."tenant"
	AND l."provider" = c."provider"
	AND l."tenant" <> 'default'
	AND l."config_version" IS NULL;
