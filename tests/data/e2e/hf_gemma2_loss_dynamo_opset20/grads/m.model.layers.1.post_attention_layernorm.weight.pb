 B0m.model.layers.1.post_attention_layernorm.weightJ€¹;%ìû;ÀÛ¹“5»ë;VÛ9»Èhe»d{“;2S»¸¯;Ü3ë:A±ß:†Q;„&‚»^¡»ˆ»¬R»çS»,$;ý¥º¯K;; ->¹°ß¡;4Áó»üÓ:€VÚ¹ÎŠ</ÑÍ:/ô
»àò>;°%„¹P4»