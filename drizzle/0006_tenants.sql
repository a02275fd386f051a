CREATE TABLE "tenant_api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"name" text NOT NULL,
	"digest" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "tenant_context_secrets" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"secret" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"retired_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "tenant_provider_configs" (
	"tenant" text NOT NULL,
	"provider" text NOT NULL,
	"version" integer NOT NULL,
	"env" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"removed_at" timestamp with time zone,
	CONSTRAINT "tenant_provider_configs_tenant_provider_version_pk" PRIMARY KEY("tenant","provider","version")
);
--> statement-breakpoint
CREATE TABLE "tenant_webhooks" (
	"tenant" text PRIMARY KEY NOT NULL,
	"url" text NOT NULL,
	"secret" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "tenants" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "flows" ADD COLUMN "config_version" integer;--> statement-breakpoint
ALTER TABLE "links" ADD COLUMN "config_version" integer;--> statement-breakpoint
ALTER TABLE "webhook_deliveries" ADD COLUMN "tenant" text DEFAULT 'default' NOT NULL;--> statement-breakpoint
ALTER TABLE "tenant_api_keys" ADD CONSTRAINT "tenant_api_keys_tenant_tenants_id_fk" FOREIGN KEY ("tenant") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_context_secrets" ADD CONSTRAINT "tenant_context_secrets_tenant_tenants_id_fk" FOREIGN KEY ("tenant") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_provider_configs" ADD CONSTRAINT "tenant_provider_configs_tenant_tenants_id_fk" FOREIGN KEY ("tenant") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tenant_webhooks" ADD CONSTRAINT "tenant_webhooks_tenant_tenants_id_fk" FOREIGN KEY ("tenant") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "tenant_api_keys_digest_idx" ON "tenant_api_keys" USING btree ("digest");--> statement-breakpoint
CREATE INDEX "tenant_api_keys_tenant_idx" ON "tenant_api_keys" USING btree ("tenant");--> statement-breakpoint
CREATE INDEX "tenant_context_secrets_tenant_idx" ON "tenant_context_secrets" USING btree ("tenant");--> statement-breakpoint
INSERT INTO "tenants" ("id", "name") VALUES ('default', 'Default') ON CONFLICT DO NOTHING;