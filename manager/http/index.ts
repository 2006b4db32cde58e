export { buildApp, type HttpAppOptions } from './app.js';
export { errorBody, statusFor, toFleetgateError } from './errors.js';
