/* A TF-Lite-Micro-style interpreter: the network is a table of ops built at
 * start-up, every op is dispatched at run time to the generic library
 * kernels, and tensors live at offsets of one greedily planned arena. The
 * baseline the generated code is measured against. */
#include "tk_internal.h"

static int32_t run_op(const tk_op *op, int8_t *arena, int32_t optimised) {
  const tk_conv_params *p = &op->params;
  const tk_requant *q = &op->requant;
  const tk_dims *in = &op->in_dims, *f = &op->filter_dims, *out = &op->out_dims;
  const int8_t *x = arena + op->input;
  int8_t *y = arena + op->output;
  switch (op->kind) {
    case TK_OP_CONV:
      if (f->h == 1 && f->w == 1 && p->stride == 1 && p->pad_top == 0 &&
          p->pad_left == 0)
        return (optimised ? tk_convolve_1x1_4ch_s8 : tk_convolve_1x1_s8)(
            p, q, in, x, f, op->weights, op->bias, out, y);
      return (optimised ? tk_convolve_4ch_s8 : tk_convolve_s8)(
          p, q, in, x, f, op->weights, op->bias, out, y,
          (int16_t *)(void *)(arena + op->scratch), op->scratch_bytes);
    case TK_OP_DEPTHWISE:
      return (optimised ? tk_depthwise_conv_unrolled_s8 : tk_depthwise_conv_s8)(
          p, q, in, x, f, op->weights, op->bias, out, y);
    case TK_OP_FC:
      return tk_fully_connected_s8(p->input_zp, p->output_zp, p->act_min,
                                   p->act_max, q, 1, in->c, x, out->c,
                                   op->weights, op->bias, y);
    case TK_OP_AVGPOOL:
      return tk_avgpool_s8(in, x, p->act_min, p->act_max, y);
    case TK_OP_ADD:
      return tk_add_s8(&op->add, in->n * in->h * in->w * in->c, x,
                       arena + op->input2, y);
    default:
      return TK_ERR_ARG;
  }
}

int32_t tk_interp_invoke(const tk_op *ops, int32_t num_ops, int8_t *arena,
                         int32_t optimised) {
  int32_t i;
  if (ops == 0 || arena == 0 || num_ops < 1) return TK_ERR_ARG;
  for (i = 0; i < num_ops; ++i) {
    const int32_t status = run_op(&ops[i], arena, optimised);
    if (status != TK_OK) return status;
  }
  return TK_OK;
}

int32_t tk_interp_invoke_batch(const tk_op *ops, int32_t num_ops,
                               int8_t *arena, int32_t optimised, int32_t n,
                               const int8_t *inputs, int32_t input_offset,
                               int32_t input_bytes, int8_t *outputs,
                               int32_t output_offset, int32_t output_bytes) {
  int32_t b, i;
  for (b = 0; b < n; ++b) {
    int32_t status;
    for (i = 0; i < input_bytes; ++i)
      arena[input_offset + i] = inputs[(int64_t)b * input_bytes + i];
    status = tk_interp_invoke(ops, num_ops, arena, optimised);
    if (status != TK_OK) return status;
    for (i = 0; i < output_bytes; ++i)
      outputs[(int64_t)b * output_bytes + i] = arena[output_offset + i];
  }
  return TK_OK;
}
