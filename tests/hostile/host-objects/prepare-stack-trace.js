// expect: refused no-host-objects
function hostile(ctx) {
  Error.prepareStackTrace = (error, frames) => frames;
  return '';
}
