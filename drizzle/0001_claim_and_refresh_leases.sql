ALTER TABLE "flows" ADD COLUMN "claim_token" text;--> statement-breakpoint
ALTER TABLE "links" ADD COLUMN "refresh_lease" text;--> statement-breakpoint
ALTER TABLE "links" ADD COLUMN "refresh_lease_until" timestamp with time zone;