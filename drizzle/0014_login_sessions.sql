CREATE TABLE "login_sessions" (
	"session_hash" text PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"client_id" text NOT NULL,
	"provider" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"result" text,
	"reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deadline" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "flows" ADD COLUMN "login_session" text;--> statement-breakpoint
ALTER TABLE "oidc_apps" ADD COLUMN "legacy_jwt_secret" text;--> statement-breakpoint
CREATE INDEX "login_sessions_expires_at_idx" ON "login_sessions" USING btree ("expires_at");