// expect: refused no-import
function render(ctx) {
  return require('fs').readFileSync('/etc/passwd', 'utf8');
}
