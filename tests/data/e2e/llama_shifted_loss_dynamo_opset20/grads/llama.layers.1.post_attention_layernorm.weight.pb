 B.llama.layers.1.post_attention_layernorm.weightJ€Y­; gí7úå0¼®'E»|ù€»2àÜ;ˆxğºÌæ|»
×º?Ç*¼JÓ»;¬<ÊºÜJ;Fù¯»éØ »»ø;YÒ<Må‡»ŠÑ£; jñ»½Õ<À[¼º:š0¼+<»f:H;‰»„ô&;}ò§»úF<vLø;u—·»