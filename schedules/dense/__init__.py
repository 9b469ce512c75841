"""Schedule rules for the dense layers on CPUs (the style of ``tvm.s_tir.dlight``) and their tuning space."""
