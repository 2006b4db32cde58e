/**
 * zod/mini with English messages: the schemas of the protocol and of the agent's config import zod
 * from here. zod/mini is the functional API a bundler trims to what is called (the agent ships as
 * one bundle, docs/deployment.md); unlike classic zod it loads no locale by itself.
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

export * from 'zod/mini';
