ALTER TABLE "tenants" ADD COLUMN "api_rate_limit" jsonb;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "brand" jsonb;