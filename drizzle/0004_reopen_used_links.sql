ALTER TABLE "used_contexts" ADD COLUMN "browser_hash" text;--> statement-breakpoint
ALTER TABLE "used_contexts" ADD COLUMN "state_hash" text;