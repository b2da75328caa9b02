// expect: placeholder error
function hostile(ctx) {
  'use strict';
  Array.prototype.map = () => [];
  return 'poisoned';
}
