// expect: refused no-import
function hostile(ctx) {
  import('data:text/javascript,1');
  return '';
}
