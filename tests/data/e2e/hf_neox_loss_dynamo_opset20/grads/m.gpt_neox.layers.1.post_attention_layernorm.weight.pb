 B3m.gpt_neox.layers.1.post_attention_layernorm.weightJ€·ŠÉ·Ü7?Œ98/_8kÌa¸cÇ,¸‹ß¶·Ş$¸˜5Ë6¯?·š{7‰ë(¸°Úœ85aq¸*7H9“6+7æA·Â¤†¸œ¹5_ ·¸[ÜØ¹ZÊ+¸¦|N¹C(38(*W¸Î‰¸§ ¹G_d9ôèÍ7Nò¸»ä‹·¶„
·