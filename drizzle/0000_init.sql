CREATE TABLE "flows" (
	"state_hash" text PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"user_id" text NOT NULL,
	"provider" text NOT NULL,
	"browser_hash" text NOT NULL,
	"return_to" text,
	"status" text DEFAULT 'open' NOT NULL,
	"step" jsonb,
	"data" text,
	"locked_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "kv" (
	"namespace" text NOT NULL,
	"key" text NOT NULL,
	"value" text NOT NULL,
	"expires_at" timestamp with time zone,
	CONSTRAINT "kv_namespace_key_pk" PRIMARY KEY("namespace","key")
);
--> statement-breakpoint
CREATE TABLE "links" (
	"tenant" text NOT NULL,
	"user_id" text NOT NULL,
	"provider" text NOT NULL,
	"external_id" text NOT NULL,
	"external_name" text,
	"status" text DEFAULT 'active' NOT NULL,
	"scopes" text[] DEFAULT '{}' NOT NULL,
	"credentials" text NOT NULL,
	"expires_at" timestamp with time zone,
	"linked_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "links_tenant_user_id_provider_pk" PRIMARY KEY("tenant","user_id","provider")
);
--> statement-breakpoint
CREATE TABLE "used_contexts" (
	"tenant" text NOT NULL,
	"jti" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "used_contexts_tenant_jti_pk" PRIMARY KEY("tenant","jti")
);
--> statement-breakpoint
CREATE INDEX "flows_expires_at_idx" ON "flows" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "kv_expires_at_idx" ON "kv" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "links_external_idx" ON "links" USING btree ("tenant","provider","external_id");--> statement-breakpoint
CREATE INDEX "used_contexts_expires_at_idx" ON "used_contexts" USING btree ("expires_at");