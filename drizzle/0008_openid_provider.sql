CREATE TABLE "oidc_apps" (
	"tenant" text NOT NULL,
	"client_id" text NOT NULL,
	"name" text NOT NULL,
	"type" text NOT NULL,
	"redirect_uris" text[] NOT NULL,
	"post_logout_redirect_uris" text[] DEFAULT '{}' NOT NULL,
	"providers" text[],
	"subject" text DEFAULT 'user' NOT NULL,
	"first_party" boolean DEFAULT true NOT NULL,
	"secret" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "oidc_apps_tenant_client_id_pk" PRIMARY KEY("tenant","client_id")
);
--> statement-breakpoint
CREATE TABLE "oidc_payloads" (
	"tenant" text NOT NULL,
	"model" text NOT NULL,
	"id_hash" text NOT NULL,
	"payload" text NOT NULL,
	"grant_id" text,
	"user_code_hash" text,
	"uid" text,
	"consumed_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	CONSTRAINT "oidc_payloads_tenant_model_id_hash_pk" PRIMARY KEY("tenant","model","id_hash")
);
--> statement-breakpoint
CREATE TABLE "oidc_signing_keys" (
	"tenant" text NOT NULL,
	"kid" text NOT NULL,
	"alg" text NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"private_jwk" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"signs_from" timestamp with time zone NOT NULL,
	"retired_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	CONSTRAINT "oidc_signing_keys_tenant_kid_pk" PRIMARY KEY("tenant","kid")
);
--> statement-breakpoint
ALTER TABLE "flows" ADD COLUMN "sign_in" text;--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "user_provider" text;--> statement-breakpoint
ALTER TABLE "oidc_apps" ADD CONSTRAINT "oidc_apps_tenant_tenants_id_fk" FOREIGN KEY ("tenant") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "oidc_signing_keys" ADD CONSTRAINT "oidc_signing_keys_tenant_tenants_id_fk" FOREIGN KEY ("tenant") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "oidc_payloads_grant_idx" ON "oidc_payloads" USING btree ("tenant","grant_id");--> statement-breakpoint
CREATE INDEX "oidc_payloads_user_code_idx" ON "oidc_payloads" USING btree ("tenant","model","user_code_hash");--> statement-breakpoint
CREATE INDEX "oidc_payloads_uid_idx" ON "oidc_payloads" USING btree ("tenant","model","uid");--> statement-breakpoint
CREATE INDEX "oidc_payloads_expires_at_idx" ON "oidc_payloads" USING btree ("expires_at");