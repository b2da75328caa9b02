// expect: placeholder error
// Host APIs are simply not there at run time: typeof says so, a call throws.
function hostile(ctx) {
  const names = ['fe', 'tch'];
  return String(Object[names.join('')]());
}
